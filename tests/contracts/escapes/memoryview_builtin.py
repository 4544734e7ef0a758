# escape: memoryview | source: buffer tricks
@export
def attack():
    return memoryview(b'x')
