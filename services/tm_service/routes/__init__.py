"""The API's routes: health probes, and the visitor's task endpoints.

Routes translate between HTTP and the task service: they parse, call one
operation, and wrap its result in the success envelope. Errors are raised as
they come and answered by `tm_service.errors`.
"""
