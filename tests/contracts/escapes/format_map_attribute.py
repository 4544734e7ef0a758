# escape: str.format_map attribute access | source: format-string attacks on Jinja/Django
@export
def attack():
    return '{x.__class__}'.format_map({'x': 1})
