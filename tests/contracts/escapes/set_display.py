# escape: set iteration order | source: non-determinism
@export
def attack():
    return list({'b', 'a', 'c'})
