# escape: nested function capturing a guard | source: closure tricks
@export
def attack():
    def inner():
        return 1
    return inner()
