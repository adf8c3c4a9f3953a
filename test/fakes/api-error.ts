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
