# escape: dict of sets | source: non-determinism
@export
def attack():
    return {'k': {1, 2}}
