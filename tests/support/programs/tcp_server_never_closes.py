from socket import *

serverSocket = socket(AF_INET, SOCK_STREAM)
serverSocket.bind(('localhost', 8080))
serverSocket.listen(5)
print('This server is ready to receive')
kept = []
while True:
    connectionSocket, clientAddr = serverSocket.accept()
    sentence = connectionSocket.recv(1024).decode()
    connectionSocket.send("thank you !".encode())
    kept.append(connectionSocket)      # forgot connectionSocket.close()
