# escape: walrus leaking comprehension scope | source: scoping tricks
@export
def attack():
    return [(y := x) for x in range(3)]
