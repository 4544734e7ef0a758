# escape: f-string of an API object (its repr) | source: object leaks
@export
def attack():
    return f'{ctx}'
