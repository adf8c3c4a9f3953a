/** A failure a fake Google API answers with: the HTTP status, and the API's own reason code ("notFound", "NoSuchKey"). */
export class FakeApiError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

/** The JSON error body Google's JSON APIs answer a failure with. */
export function googleErrorBody(error: FakeApiError): { error: { code: number; message: string; errors: Array<{ message: string; domain: string; reason: string }> } } {
  return { error: { code: error.status, message: error.message, errors: [{ message: error.message, domain: 'global', reason: error.reason }] } };
}
