# escape: doubling via += | source: resource exhaustion
@export
def attack():
    s = 'ab'
    for i in range(64):
        s += s
    return len(s)
