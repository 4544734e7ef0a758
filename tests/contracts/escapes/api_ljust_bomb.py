# escape: str.ljust allocation | source: resource exhaustion
@export
def attack():
    return 'x'.ljust(10 ** 9)
