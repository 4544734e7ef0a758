# escape: storing a giant value | source: storage exhaustion
data = Variable()
@export
def attack():
    data.set('x' * 60000 + 'y' * 60000)
    return 1
