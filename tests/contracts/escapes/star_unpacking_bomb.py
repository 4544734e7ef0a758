# escape: star unpacking to build huge lists | source: allocation tricks
@export
def attack():
    a = [0] * 60000
    return [*a, *a, *a]
