# escape: input() blocking the node | source: denial of service
@export
def attack():
    return input()
