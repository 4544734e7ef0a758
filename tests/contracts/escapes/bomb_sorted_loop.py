# escape: sorting a big list in a loop | source: CPU exhaustion
@export
def attack():
    l = list(range(60000))
    for i in range(10 ** 6):
        l = sorted(l)
