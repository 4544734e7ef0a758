# escape: dir() probing | source: object introspection
@export
def attack():
    return dir(ctx)
