# escape: comparing big lists in a loop | source: CPU exhaustion
@export
def attack():
    a = list(range(60000))
    b = list(range(60000))
    n = 0
    for i in range(10 ** 6):
        if a == b:
            n = n + 1
    return n
