"""The API and the node client agree on every bound of a job (issue 12): whatever the job POST
validation accepts, the commit the broker builds from it passes the client's own checks. The
bounds themselves live once, in pushd.protocol.limits."""

from __future__ import annotations

import json

from hypothesis import given, settings
from pushd_client.environment import validate_job_env
from pushd_client.jobfile import decode_file_spec

from pushd.api.validation import JobValidationError, parse_job_request
from pushd.protocol import limits
from pushd.protocol.frames import encode_body
from pushd.protocol.messages import commit_message, parse_server_message
from tests.support.job_bodies import job_bodies


@settings(max_examples=400, deadline=None)
@given(job_bodies)
def test_what_the_api_accepts_the_client_accepts(raw: bytes) -> None:
    try:
        job = parse_job_request(raw, max_file_size=10 * limits.MAX_JOB_FILE_BYTES)
    except JobValidationError:
        return
    assert len(set(job.nodes)) == len(job.nodes)
    assert all(0 < len(name) <= limits.MAX_NAME_LENGTH for name in job.nodes)
    # As the broker sends it (the largest sequence, job id and server name it can put in).
    body = encode_body(commit_message(
        sequence=2**63 - 1, job_id="f" * 32, server="s" * limits.MAX_NAME_LENGTH,
        command=job.command, user=job.user, directory=job.dir, env=job.env, file=job.file,
        capture=job.capture, run_timeout=job.run_timeout,
    ))
    assert len(body) <= limits.MAX_SERVER_MESSAGE_BYTES
    message = parse_server_message(json.loads(body))  # no bad_message
    assert message.run_timeout is not None and message.run_timeout >= limits.MIN_RUN_TIMEOUT
    assert validate_job_env(message.env) == (message.env or {})
    if message.file is not None:
        decode_file_spec(message.file, limits.MAX_JOB_FILE_BYTES)
    if message.user is not None:
        assert 0 < len(message.user) <= limits.MAX_USER_LENGTH
    if message.directory is not None:
        assert limits.is_absolute_dir(message.directory)

