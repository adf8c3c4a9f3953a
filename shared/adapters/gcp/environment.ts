import { ConfigError } from '../../core/errors.ts';

/** Everything the Google Cloud composition root reads from its environment, checked. */
export interface GoogleCloudEnvironment {
  project: string;
  region: string;
  /** Where workers' VMs are made. */
  zone: string;
  /** The one bucket for sources, logs, results and snapshots. */
  bucket: string;
  dashboardUrl: string;
  /** The Artifact Registry Docker repository holding the builder images, as REGION-docker.pkg.dev/PROJECT/REPO. */
  imageRepo: string;
  /** The workers' service account, which holds no role. */
  workerServiceAccount: string;
  /** The builders config inside the deployed source. */
  configFile: string;
  /** Deliveries of a message before Pub/Sub dead-letters it; the functions give up visibly on the last one. */
  maxDeliveryAttempts: number;
  /** The builder images deploy pushed: host type -> `name:tag` under imageRepo. */
  images: Map<string, string>;
}

/** Google's rules for a project ID, a region and a zone, as the environment and `hermetic deploy` check them. */
export const placePatterns = {
  project: /^[a-z][a-z0-9-]{4,28}[a-z0-9]$/,
  region: /^[a-z]+-[a-z]+[0-9]+$/,
  zone: /^[a-z]+-[a-z]+[0-9]+-[a-z]$/,
} as const;

/** Each variable: what it holds (for the error) and the check of its value. */
const variables = {
  HERMETIC_PROJECT: ['the Google Cloud project ID', placePatterns.project],
  HERMETIC_REGION: ['the region of the functions, e.g. us-central1', placePatterns.region],
  HERMETIC_ZONE: ['the zone of the workers, e.g. us-central1-a', placePatterns.zone],
  HERMETIC_BUCKET: ['the blobs bucket name', /^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$/],
  HERMETIC_DASHBOARD_URL: ['the dashboard URL, e.g. https://PROJECT.appspot.com', /^https?:\/\/[^\s/]+(\/\S*)?$/],
  HERMETIC_IMAGE_REPO: ['the builder images repository, e.g. us-central1-docker.pkg.dev/PROJECT/hermetic', /^[a-z0-9-]+-docker\.pkg\.dev\/[a-z][a-z0-9-]+\/[a-z0-9-]+$/],
  HERMETIC_WORKER_SA: ['the workers\' service account email', /^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z0-9-]+\.iam\.gserviceaccount\.com$/],
} as const;

export type EnvironmentVariable = keyof typeof variables | 'HERMETIC_CONFIG' | 'HERMETIC_MAX_DELIVERY_ATTEMPTS' | 'HERMETIC_IMAGES';
/** The variables deploy must set on every function, with what each holds. */
export const requiredVariables: ReadonlyArray<{ name: EnvironmentVariable; holds: string }> = Object.entries(variables).map(
  ([name, [holds]]) => ({ name: name as EnvironmentVariable, holds }),
);

/**
 * Reads and checks the environment. Throws one ConfigError naming every variable that is missing or malformed and
 * what it should hold, so a misdeployed function fails on its first event, saying what to set.
 */
export function readGoogleCloudEnvironment(env: Readonly<Record<string, string | undefined>>): GoogleCloudEnvironment {
  const problems: string[] = [];
  const value = (name: keyof typeof variables): string => {
    const [holds, pattern] = variables[name];
    const raw = env[name]?.trim() ?? '';
    if (raw === '') problems.push(`${name} is not set (${holds})`);
    else if (!pattern.test(raw)) problems.push(`${name}=${JSON.stringify(raw)} is not ${holds}`);
    return raw;
  };
  const attemptsText = env['HERMETIC_MAX_DELIVERY_ATTEMPTS']?.trim() || '5';
  const maxDeliveryAttempts = Number(attemptsText);
  // Pub/Sub takes 5 to 100 for a dead-letter policy.
  if (!Number.isInteger(maxDeliveryAttempts) || maxDeliveryAttempts < 5 || maxDeliveryAttempts > 100) {
    problems.push(`HERMETIC_MAX_DELIVERY_ATTEMPTS=${JSON.stringify(attemptsText)} is not a whole number from 5 to 100`);
  }
  // "linux-amd64:97408d53c648 linux-386:...", space-separated: gcloud's --set-env-vars splits on commas.
  const images = new Map<string, string>();
  for (const entry of (env['HERMETIC_IMAGES'] ?? '').split(/\s+/).filter((part) => part !== '')) {
    const match = /^([a-z0-9][a-z0-9-]{0,62}):([a-z0-9][a-z0-9._-]{0,127})$/.exec(entry);
    if (match?.[1] === undefined) problems.push(`HERMETIC_IMAGES: ${JSON.stringify(entry)} is not HOSTTYPE:TAG`);
    else images.set(match[1], entry);
  }
  const read: GoogleCloudEnvironment = {
    project: value('HERMETIC_PROJECT'),
    region: value('HERMETIC_REGION'),
    zone: value('HERMETIC_ZONE'),
    bucket: value('HERMETIC_BUCKET'),
    dashboardUrl: value('HERMETIC_DASHBOARD_URL'),
    imageRepo: value('HERMETIC_IMAGE_REPO'),
    workerServiceAccount: value('HERMETIC_WORKER_SA'),
    configFile: env['HERMETIC_CONFIG']?.trim() || 'hermetic.config.json',
    maxDeliveryAttempts,
    images,
  };
  if (read.zone !== '' && read.region !== '' && !read.zone.startsWith(`${read.region}-`)) {
    problems.push(`HERMETIC_ZONE=${read.zone} is not in HERMETIC_REGION=${read.region}`);
  }
  if (problems.length > 0) throw new ConfigError(`the Google Cloud environment is incomplete: ${problems.join('; ')}`);
  return read;
}
