# escape: replace growing a string exponentially | source: resource exhaustion
@export
def attack():
    s = 'a'
    for i in range(64):
        s = s.replace('a', 'aa')
    return len(s)
