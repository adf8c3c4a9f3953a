import { memoryGitHubHarness, serverGitHubHarness } from '../helpers/github-harness.ts';
import { githubContract } from './github.contract.ts';

githubContract('memory fake', memoryGitHubHarness, { rateLimit: 'the memory fake answers every call: it has no rate limit to spend' });
githubContract('REST API under a token (commit statuses)', () => serverGitHubHarness('token'));
githubContract('REST API as a GitHub App (check runs)', () => serverGitHubHarness('app'));
