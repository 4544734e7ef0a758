# escape: exit() to kill the node | source: denial of service
@export
def attack():
    exit(0)
