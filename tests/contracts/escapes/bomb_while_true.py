# escape: infinite loop | source: resource exhaustion
@export
def attack():
    while True:
        pass
