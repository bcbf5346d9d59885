"""Campaigns: a budgeted contact list from a published run (`vafa campaign`).

`plan` chooses whom to contact for the most expected retained value net of cost (the rule in
its docstring; the knapsack in `knapsack`); `publish` refuses a run flagged stale or drifted
unless allowed and writes each campaign under its own id, outside the run folders.
"""
