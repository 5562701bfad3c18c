"""The Redis quota (extra ``redis``): one quota for every process and host on a token.

``quota`` holds `RedisQuota`, the backend; ``lua`` its scripts and the design behind them;
``reserve`` the announced interactive reserve. Nothing is
imported here, so ``redis`` is loaded only by the module that needs it.
"""
