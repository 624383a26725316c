"""Schemathesis hooks for the liveness API: frame bodies are real face images from the shared test data, so the
runs reach the models and the judge. (Arbitrary bytes are schema-valid `format: binary` but no image: the server
rightly refuses them, which schemathesis would count as a valid request rejected. The decoder's refusals are
tested by the Rust tests.)

Loaded by `tests/schemathesis.rs` through SCHEMATHESIS_HOOKS; LIVENESS_TESTDATA names the shared test images.
"""
import glob
import os

import schemathesis
from hypothesis import strategies as st

TESTDATA = os.environ["LIVENESS_TESTDATA"]


def images(pattern):
    found = [open(path, "rb").read() for path in sorted(glob.glob(os.path.join(TESTDATA, pattern)))]
    if not found:
        raise RuntimeError(f"no test images match {pattern} under {TESTDATA}")
    return found


JPEGS = images("expression/*.jpg") + images("pose/*.jpg")
PNGS = images("expression/*.png")

schemathesis.openapi.media_type("image/jpeg", st.sampled_from(JPEGS))
schemathesis.openapi.media_type("image/png", st.sampled_from(PNGS))


@schemathesis.hook
def flatmap_body(context, body):
    """A multipart frame's `image` part, when it is a schema-valid file (bytes), becomes a real face image."""
    if isinstance(body, dict) and isinstance(body.get("image"), bytes):
        return st.sampled_from(JPEGS + PNGS).map(lambda image: {**body, "image": image})
    return st.just(body)


@schemathesis.hook("filter_query").apply_to(method="POST", path="/api/v1/liveness/sessions")
def websocket_sessions_have_six_actions(context, query):
    """The one constraint between parameters that OpenAPI cannot state (the document says it in words): a
    WebSocket session has at most six challenges. Negative cases, which break the schema anyway, stay."""
    if not isinstance(query, dict) or query.get("interface") != "websocket":
        return True
    count = query.get("num_challenges")
    return not (isinstance(count, int) and not isinstance(count, bool) and count == 7)
