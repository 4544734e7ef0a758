# escape: gi_frame attribute (no dunder) on a generator | source: CTF write-ups on generator frames
@export
def attack():
    g = [1]
    return g.gi_frame
