# escape: open a file | source: classic
@export
def attack():
    return open('/etc/passwd').read()
