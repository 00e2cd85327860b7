"""Renderings of one kind of object shared by several commands.

A view module draws one domain object (a run log, a search) for every command
that shows it, so commands never import each other. The generic toolkit they
build on (numbers, badges, findings, tables, terminal charts) is
:mod:`babysit.cli.render`.
"""
