import { loadGoogleCloud, loadGoogleCloudDashboard } from '../shared/runtimes/google-cloud/google-cloud.ts';
import { registerFunctions } from './register.ts';

// The package's main on Google Cloud: Cloud Functions and the App Engine dashboard load this, and functions-framework
// serves the one function its target names. The adapters are built on the first event, so a misconfigured function
// fails then, saying which variable to set. The dashboard is built on its own: App Engine holds no GitHub secret.
registerFunctions(() => loadGoogleCloud(process.env), () => loadGoogleCloudDashboard(process.env));
