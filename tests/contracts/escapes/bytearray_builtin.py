# escape: bytearray | source: mutable buffer tricks
@export
def attack():
    return bytearray(10)
