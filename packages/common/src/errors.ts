/**
 * Every error a user or operator can see carries a stable code. The HTTP layer maps
 * codes to statuses in one place (HTTP_STATUS below); everything else throws A4cError.
 */
export const HTTP_STATUS = {
  INVALID_ARGUMENT: 400,
  INVALID_JSON: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  METHOD_NOT_ALLOWED: 405,
  CONFLICT: 409,
  PAYLOAD_TOO_LARGE: 413,
  UNSUPPORTED_MEDIA_TYPE: 415,
  UPGRADE_REQUIRED: 426,
  QUOTA_EXCEEDED: 429,
  TOO_MANY_SESSIONS: 429,
  RATE_LIMITED: 429,
  INTERNAL: 500,
  CAPACITY_EXHAUSTED: 503,
  UNAVAILABLE: 503,
} as const;

export type ErrorCode = keyof typeof HTTP_STATUS;
export const ERROR_CODES = Object.keys(HTTP_STATUS) as [ErrorCode, ...ErrorCode[]];

/** The JSON body of every error response. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
  /** The request field the error is about, for INVALID_ARGUMENT. */
  field?: string;
  /** What the user can do next, where there is something better than the message. */
  suggestion?: string;
  requestId?: string;
  [extra: string]: unknown;
}

export class A4cError extends Error {
  readonly code: ErrorCode;
  readonly details: Omit<ErrorBody, 'error' | 'message'>;

  constructor(code: ErrorCode, message: string, details: Omit<ErrorBody, 'error' | 'message'> = {}) {
    super(message);
    this.name = 'A4cError';
    this.code = code;
    this.details = details;
  }

  get status(): number {
    return HTTP_STATUS[this.code];
  }

  toBody(): ErrorBody {
    return { error: this.code, message: this.message, ...this.details };
  }
}

export function invalidArgument(field: string, reason: string): A4cError {
  return new A4cError('INVALID_ARGUMENT', `${field}: ${reason}`, { field });
}

export function notFound(kind: string, id: string, suggestion?: string): A4cError {
  return new A4cError('NOT_FOUND', `${kind} ${JSON.stringify(id)} does not exist`, suggestion ? { suggestion } : {});
}

export function conflict(message: string, suggestion?: string): A4cError {
  return new A4cError('CONFLICT', message, suggestion ? { suggestion } : {});
}
