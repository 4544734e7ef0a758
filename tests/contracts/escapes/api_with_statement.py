# escape: with statement | source: context manager hooks
@export
def attack():
    with ctx:
        pass
    return 1
