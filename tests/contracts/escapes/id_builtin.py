# escape: id() (memory address) | source: non-determinism
@export
def attack():
    return id(ctx)
