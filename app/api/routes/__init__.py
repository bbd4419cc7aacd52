"""The HTTP routes, one module per resource.

Routes are `async def` and hand blocking service calls to the thread pool (`run_in_threadpool`).
A plain `def` route would cost two thread-pool hops per request: FastAPI runs it on the pool, and
then validates its response model on the pool again.
"""
