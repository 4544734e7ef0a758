# escape: mutual recursion | source: resource exhaustion
def a(n):
    return b(n + 1)
def b(n):
    return a(n + 1)
@export
def attack():
    return a(0)
