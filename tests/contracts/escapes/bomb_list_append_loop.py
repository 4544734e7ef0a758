# escape: append in an unbounded loop | source: resource exhaustion
@export
def attack():
    l = []
    while True:
        l.append(l)
