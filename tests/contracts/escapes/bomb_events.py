# escape: unbounded events | source: receipt exhaustion
@export
def attack():
    while True:
        emit('E', 'x' * 1000)
