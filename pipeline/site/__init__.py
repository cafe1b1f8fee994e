"""Access to video sites: every request through one ``site_access`` per process, with the job's request
budgets (``request_budget``), a breaker per site for blocks (``breaker``), cookies and proxies
(``credentials``), and what the site or network raised turned into reason codes (``errors``).
"""
