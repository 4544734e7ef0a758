# escape: hash() of a str (PYTHONHASHSEED dependent) | source: non-determinism
@export
def attack():
    return hash('abc')
