import { z } from 'zod';
import { describeError, PermanentError } from '../errors.ts';
import { topics, TryRequested, validate } from '../model/messages.ts';
import type { GitHub } from '../../ports/github.ts';
import type { Logger } from '../../ports/log.ts';
import type { Publisher } from '../../ports/messages.ts';
import type { Catalog } from '../pipeline/deps.ts';
import { publishMessage } from '../pipeline/publish.ts';
import { parseTryComment } from './comment.ts';
import { parseSignature, readSignedBody, signedWith, type SignedBody } from './signed-body.ts';

export interface WebhookDeps {
  /** The secret GitHub signs deliveries with; undefined answers every delivery 503. */
  secret: string | undefined;
  catalog: Catalog;
  github: GitHub | undefined;
  publisher: Publisher;
  logger: Logger;
}

/** GitHub sends at most 25 MB; a comment event is a few kB, so anything near this is not one. */
export const maxWebhookBodyBytes = 5 * 1024 * 1024;

/** A GitHub delivery as it arrives: the headers that matter, and the body still to be read. */
export interface WebhookDelivery {
  event: string | undefined;
  signature: string | undefined;
  id: string | undefined;
  /** The body's length as the request declares it; a chunked one does not. */
  length: number | undefined;
  /** The exact bytes GitHub signed, as they arrive; read only when the headers let the delivery through. */
  body: AsyncIterable<Uint8Array> | Iterable<Uint8Array>;
}

export interface WebhookReply {
  status: number;
  message: string;
}

/** The parts of an `issue_comment` event that are read; GitHub sends far more. */
const IssueComment = z.object({
  action: z.string(),
  issue: z.object({ number: z.number().int().positive(), pull_request: z.object({}).passthrough().optional() }),
  comment: z.object({ body: z.string().nullable(), user: z.object({ login: z.string(), type: z.string() }) }),
  repository: z.object({ full_name: z.string() }),
});

/**
 * Handles one GitHub webhook delivery. A delivery with no `X-Hub-Signature-256` of GitHub's form is refused 401, and
 * one that declares more than {@link maxWebhookBodyBytes} 413, before its body is read; a body that passes the limit
 * as it streams is refused 413 there, and one whose HMAC under the secret is not the signature 401. Only then is it
 * parsed. A `/try` comment on a pull request of a watched repo becomes a
 * trybot request for the pull request's head commit, by the comment's author, published to `try-requested`
 * (202); the trust check happens there. Other events and comments are acknowledged and ignored (202), a `/try`
 * that cannot be read is answered 422 with why. Never throws: a GitHub or publish failure is a 503, which GitHub
 * shows as a failed delivery that can be redelivered.
 */
export async function handleWebhook(deps: WebhookDeps, delivery: WebhookDelivery): Promise<WebhookReply> {
  if (deps.secret === undefined) return { status: 503, message: 'the webhook secret is not configured' };
  if (delivery.signature === undefined) return { status: 401, message: 'missing X-Hub-Signature-256' };
  const expected = parseSignature(delivery.signature);
  if (expected === undefined) return { status: 401, message: 'X-Hub-Signature-256 is not sha256= and 64 hex digits' };
  const tooLarge = { status: 413, message: `body larger than ${maxWebhookBodyBytes} bytes` };
  if (delivery.length !== undefined && delivery.length > maxWebhookBodyBytes) return tooLarge;
  let signed: SignedBody | undefined;
  try {
    signed = await readSignedBody(delivery.body, deps.secret, maxWebhookBodyBytes);
  } catch (error) {
    return { status: 400, message: `the body could not be read: ${describeError(error)}` };
  }
  if (signed === undefined) return tooLarge;
  if (!signedWith(signed, expected)) {
    deps.logger.warn('webhook.forged', { delivery: delivery.id, event: delivery.event });
    return { status: 401, message: 'X-Hub-Signature-256 does not match the body' };
  }
  const body = signed.bytes.toString('utf8');
  if (delivery.event === 'ping') return { status: 200, message: 'pong' };
  if (delivery.event !== 'issue_comment') return { status: 202, message: `ignored: event ${delivery.event ?? '(none)'}` };
  let payload: z.infer<typeof IssueComment>;
  try {
    payload = IssueComment.parse(JSON.parse(body));
  } catch (error) {
    return { status: 400, message: `not an issue_comment payload: ${describeError(error).slice(0, 200)}` };
  }
  if (payload.action !== 'created' || payload.issue.pull_request === undefined) return { status: 202, message: 'ignored: not a new pull request comment' };
  if (payload.comment.user.type === 'Bot') return { status: 202, message: 'ignored: comment by a bot' };
  const command = parseTryComment(payload.comment.body ?? '');
  if (command === undefined) return { status: 202, message: 'ignored: no /try command' };
  if ('error' in command) return { status: 422, message: `/try: ${command.error}` };
  const fullName = payload.repository.full_name.toLowerCase();
  const repo = deps.catalog.repos.find((candidate) => candidate.github !== undefined && `${candidate.github.owner}/${candidate.github.name}`.toLowerCase() === fullName);
  if (repo?.github === undefined) return { status: 202, message: `ignored: ${payload.repository.full_name} is not watched` };
  if (deps.github === undefined) return { status: 503, message: 'no GitHub credentials are configured to read the pull request' };
  try {
    const pull = await deps.github.pullRequest(repo.github, payload.issue.number);
    if (pull.state !== 'open') return { status: 202, message: `ignored: pull request #${pull.number} is ${pull.state}` };
    const request = validate(
      TryRequested,
      {
        v: 1,
        repo: repo.name,
        commit: pull.head.sha,
        pullRequest: pull.number,
        base: pull.base.sha,
        requester: payload.comment.user.login,
        ...command,
        via: 'comment',
      },
      'try request from a comment',
    );
    await publishMessage(deps.publisher, topics.tryRequested, request);
    deps.logger.info('webhook.try', { delivery: delivery.id, repo: repo.name, pullRequest: pull.number, commit: pull.head.sha, requester: request.requester });
    return { status: 202, message: `trybot request for ${pull.head.sha.slice(0, 12)} published` };
  } catch (error) {
    const reason = describeError(error);
    deps.logger.error('webhook.failed', { delivery: delivery.id, error: reason });
    return { status: error instanceof PermanentError ? 422 : 503, message: reason.slice(0, 300) };
  }
}
