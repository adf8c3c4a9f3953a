import { googleCloudBuildSuite } from '../helpers/google-cloud-suite.ts';

// Every message handed to its function twice, the second as a redelivery: the same verdicts, one VM per task.
googleCloudBuildSuite('boot scripts run here, docker stand-in, every message delivered twice', { twice: true });
