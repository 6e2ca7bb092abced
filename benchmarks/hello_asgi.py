"""The floor of the HTTP stack: a raw ASGI app that reads the body and answers a fixed V2-shaped JSON."""

BODY = b'{"model_name":"iris","outputs":[{"name":"predict","shape":[1],"datatype":"INT64","data":[0]}]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
