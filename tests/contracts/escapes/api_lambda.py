# escape: lambda escaping metering | source: closure tricks
@export
def attack():
    f = lambda: f()
    return f()
