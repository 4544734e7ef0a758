# escape: doubling a string in a loop | source: resource exhaustion
@export
def attack():
    s = 'ab'
    for i in range(64):
        s = s + s
    return len(s)
