# escape: yield-based frame access | source: generator-based escapes
def gen():
    yield 1
@export
def attack():
    return list(gen())
