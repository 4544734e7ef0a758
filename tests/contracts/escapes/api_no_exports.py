# escape: a module with no exports (init code at import) | source: module-level execution
x = Variable()
