/** The account key of an Azure Storage connection string (`AccountKey=...`), or `undefined` (SAS, `UseDevelopmentStorage=true`). */
export function connectionStringAccountKey(connectionString: string): string | undefined {
  return /(?:^|;)\s*AccountKey=([^;]+)/i.exec(connectionString)?.[1]?.trim();
}
