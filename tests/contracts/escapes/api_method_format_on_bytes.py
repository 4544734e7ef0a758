# escape: bytes %-formatting | source: printf-style tricks
@export
def attack():
    return b'%s' % b'x'
