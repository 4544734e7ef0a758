# escape: global statement | source: namespace escapes
x = Variable()
@export
def attack():
    global y
    y = 1
    return 1
