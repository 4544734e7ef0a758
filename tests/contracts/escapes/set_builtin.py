# escape: set() of strings | source: non-determinism
@export
def attack():
    return list(set(['b', 'a']))
