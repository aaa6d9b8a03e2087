"""Not yet implemented."""


def configure(parser):
    pass


def run(args):
    raise NotImplementedError("this sub-command is not implemented yet")
