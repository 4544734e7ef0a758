# escape: unbounded storage writes | source: storage exhaustion
data = Hash()
@export
def attack():
    i = 0
    while True:
        data[i] = 'x' * 1000
        i = i + 1
